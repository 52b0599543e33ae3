import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    scores = [72, 88, 95, 61, 84, 90]
    return


if __name__ == "__main__":
    app.run()

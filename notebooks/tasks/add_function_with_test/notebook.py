import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    raw_scores = [55, 70, 85, 100]
    return


if __name__ == "__main__":
    app.run()

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    values = [12, 7, 23]
    total = sum(values)
    return


@app.cell
def report(totl):
    message = f"Total: {totl}"
    message
    return


if __name__ == "__main__":
    app.run()

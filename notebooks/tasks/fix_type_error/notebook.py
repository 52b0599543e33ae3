import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def inputs():
    count = 7
    return (count,)


@app.cell
def label_cell(count):
    label = "Count: " + count
    label
    return


if __name__ == "__main__":
    app.run()

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    values = [4, 8, 15, 16, 23, 42]
    return (values,)


@app.cell
def debug(values):
    debug_copy = list(values)
    print(debug_copy)
    return


@app.cell
def mean_cell(values):
    mean_value = sum(values) / len(values)
    return


if __name__ == "__main__":
    app.run()

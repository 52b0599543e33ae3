import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    values = [3, 1, 4, 1, 5, 9, 2, 6]
    return (values,)


@app.cell
def tail_cell(values):
    last_three = values[-4:-1]
    last_three
    return


if __name__ == "__main__":
    app.run()

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def load():
    data = [3, 5, 8, 13]
    return (data,)


@app.cell
def summary(data):
    summary_total = sum(data)
    return


@app.cell
def doubled_cell(data):
    doubled = [x * 2 for x in data]
    return


if __name__ == "__main__":
    app.run()

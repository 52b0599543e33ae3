import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    prices = [3.0, 4.5, 2.5]
    total = sum(prices)
    return (total,)


@app.cell
def tax_cell(total):
    tax = round(total * 0.2, 2)
    return


if __name__ == "__main__":
    app.run()

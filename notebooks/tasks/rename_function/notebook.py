import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def helpers():
    TAX_RATE = 1.2

    def calc(price):
        return round(price * TAX_RATE, 2)

    return (calc,)


@app.cell
def prices_cell(calc):
    prices = [10.0, 25.0, 40.0]
    with_tax = [calc(p) for p in prices]
    return


@app.cell
def single_cell(calc):
    lamp = calc(55.0)
    return


if __name__ == "__main__":
    app.run()

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell
def _():
    prices = {"apple": 1.0, "pear": 2.0}
    return (prices,)


@app.cell
def _(prices):
    def price_of(fruit):
        return prices[fruit]

    banana = price_of("banana")
    return (banana, price_of)


@app.cell
def _(banana):
    total = banana * 3
    return (total,)


@app.cell
def _():
    dup = 1
    return (dup,)


@app.cell
def _():
    dup = 2
    return (dup,)


@app.cell
def _(mo, prices):
    mo.md(f"{len(prices)} prices")
    return


if __name__ == "__main__":
    app.run()

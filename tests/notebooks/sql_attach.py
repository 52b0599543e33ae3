import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell
def _(mo):
    _df = mo.sql(
        f"""
        ATTACH ':memory:' AS warehouse;
        """
    )
    return (warehouse,)


@app.cell
def _(mo, warehouse):
    _df = mo.sql(
        f"""
        CREATE TABLE warehouse.sales AS SELECT * FROM range(10) t(amount);
        """
    )
    return (sales,)


@app.cell
def _(mo, sales, warehouse):
    totals = mo.sql(
        f"""
        SELECT sum(amount) AS total FROM warehouse.main.sales
        """
    )
    return (totals,)


@app.cell
def _(mo, sales, warehouse):
    recent = mo.sql(
        f"""
        SELECT amount FROM warehouse.sales WHERE amount > 5
        """
    )
    return (recent,)


@app.cell
def _(totals):
    totals
    return


@app.cell
def _(recent):
    len(recent)
    return


if __name__ == "__main__":
    app.run()

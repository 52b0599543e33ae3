import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    import duckdb
    return duckdb, mo


@app.cell
def _():
    import pandas as pd

    cars = pd.DataFrame(
        {"make": ["a", "b", "c", "a"], "hp": [100, 150, 200, 120], "year": [1999, 2005, 2010, 2020]}
    )
    return (cars,)


@app.cell
def _(mo):
    threshold = mo.ui.slider(50, 250, value=110, label="min hp")
    threshold
    return (threshold,)


@app.cell
def _(cars, mo, threshold):
    strong = mo.sql(
        f"""
        SELECT make, hp FROM cars WHERE hp >= {threshold.value}
        """
    )
    return (strong,)


@app.cell
def _(strong):
    strong_makes = sorted(set(strong["make"]))
    strong_makes
    return (strong_makes,)


@app.cell
def _(cars, duckdb):
    newest = duckdb.sql("SELECT max(year) AS y FROM cars").fetchone()[0]
    return (newest,)


@app.cell
def _(cars, mo):
    _df = mo.sql(
        f"""
        CREATE TABLE car_copy AS SELECT * FROM cars
        """,
        output=False,
    )
    return (car_copy,)


@app.cell
def _(car_copy, mo):
    copied = mo.sql(
        f"""
        SELECT count(*) AS n FROM car_copy
        """
    )
    return (copied,)


@app.cell
def _(newest, strong_makes):
    print(newest, strong_makes)
    return


if __name__ == "__main__":
    app.run()

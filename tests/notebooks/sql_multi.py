import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell
def _(mo):
    _df = mo.sql(
        f"""
        ATTACH ':memory:' AS lake;
        CREATE SCHEMA lake.raw;
        CREATE TABLE lake.raw.trips (id INTEGER, km DOUBLE);
        INSERT INTO lake.raw.trips VALUES (1, 2.5), (2, 10.0);
        """
    )
    return lake, raw, trips


@app.cell
def _(lake, mo, raw, trips):
    long_trips = mo.sql(
        f"""
        SELECT * FROM lake.raw.trips WHERE km > 5
        """
    )
    return (long_trips,)


@app.cell
def _(mo, raw, trips):
    counted = mo.sql(
        f"""
        SELECT count(*) AS n FROM raw.trips
        """
    )
    return (counted,)


@app.cell
def _(mo):
    _df = mo.sql(
        f"""
        CREATE TABLE trips AS SELECT 99 AS id, 1.0 AS km
        """
    )
    return (trips,)


@app.cell
def _(mo, trips):
    local = mo.sql(
        f"""
        SELECT * FROM trips
        """
    )
    return (local,)


@app.cell
def _(long_trips):
    km = long_trips["km"].sum()
    return (km,)


if __name__ == "__main__":
    app.run()

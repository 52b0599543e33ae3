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
        CREATE SCHEMA staging;
        """
    )
    return (staging,)


@app.cell
def _(mo, staging):
    _df = mo.sql(
        f"""
        CREATE OR REPLACE TABLE staging.events AS
            SELECT i AS id, i % 3 AS kind FROM range(30) t(i);
        """
    )
    return (events,)


@app.cell
def _(events, mo, staging):
    _df = mo.sql(
        f"""
        CREATE OR REPLACE VIEW kinds AS
            SELECT kind, count(*) AS n FROM staging.events GROUP BY kind
        """
    )
    return (kinds,)


@app.cell
def _(kinds, mo):
    by_kind = mo.sql(
        f"""
        SELECT * FROM kinds ORDER BY kind
        """
    )
    return (by_kind,)


@app.cell
def _(by_kind, mo):
    mo.md(f"There are **{len(by_kind)}** kinds of event.")
    return


@app.cell
def _(mo):
    _df = mo.sql(
        f"""
        CREATE TABLE plain AS SELECT 1 AS x
        """
    )
    return (plain,)


@app.cell
def _(mo, plain):
    _df = mo.sql(
        f"""
        INSERT INTO plain VALUES (2)
        """
    )
    return


@app.cell
def _(mo, plain):
    joined = mo.sql(
        f"""
        SELECT p.x, e.kind FROM plain p JOIN staging.events e ON p.x = e.id
        """
    )
    return (joined,)


@app.cell
def _(plain):
    # A Python name that a SQL cell defines as a table: no edge in marimo's graph.
    plain_rows = len(plain) if "plain" in globals() else 0
    return (plain_rows,)


if __name__ == "__main__":
    app.run()

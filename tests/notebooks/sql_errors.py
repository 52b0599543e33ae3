import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell
def _(mo):
    missing = mo.sql(
        f"""
        SELECT * FROM no_such_table
        """
    )
    return (missing,)


@app.cell
def _(missing):
    rows = len(missing)
    return (rows,)


@app.cell
def _(mo):
    bad_syntax = mo.sql(
        f"""
        SELEC 1
        """
    )
    return (bad_syntax,)


@app.cell
def _():
    raise ValueError("the person's cell failed: budget must be positive")
    return


if __name__ == "__main__":
    app.run()

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell(hide_code=True)
def _(mo):
    mo.md(
        r"""
    # A tutorial

    Markdown cells are the bulk of a tutorial.
    """
    )
    return


@app.cell
def _():
    count = 3
    return (count,)


@app.cell(hide_code=True)
def _(count, mo):
    mo.md(f"""The count is **{count}**.""")
    return


@app.cell
def _(mo):
    mo.md("""## A second section""")
    return


@app.cell
def _(mo):
    items = mo.md(
        """
        - one
        - two
        """
    )
    items
    return (items,)


@app.cell
def _(items, mo):
    mo.vstack([items, mo.md("end")])
    return


if __name__ == "__main__":
    app.run()

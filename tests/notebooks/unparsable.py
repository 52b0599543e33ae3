import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    base = 10
    return (base,)


app._unparsable_cell(
    r"""
    half = base /
    """,
    name="_"
)


@app.cell
def _(base):
    double = base * 2
    return (double,)


app._unparsable_cell(
    r"""
    print(double
    """,
    name="broken_print"
)


@app.cell
def _(double):
    double + 1
    return


if __name__ == "__main__":
    app.run()

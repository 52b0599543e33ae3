import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell
def _(mo):
    run_button = mo.ui.run_button(label="Train")
    run_button
    return (run_button,)


@app.cell
def _(mo, run_button):
    mo.stop(not run_button.value, mo.md("Press **Train** to fit the model."))
    model = {"weights": [1, 2, 3]}
    return (model,)


@app.cell
def _(model):
    score = sum(model["weights"])
    score
    return (score,)


@app.cell
def _(mo):
    mo.stop(True)
    never = 1
    return (never,)


@app.cell
def _(never, score):
    print(never + score)
    return


if __name__ == "__main__":
    app.run()

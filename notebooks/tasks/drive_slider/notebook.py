import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def ui_imports():
    import marimo as mo

    return (mo,)


@app.cell
def controls(mo):
    slider = mo.ui.slider(1, 10, value=2, label="multiplier")
    slider
    return (slider,)


@app.cell
def compute(slider):
    result = slider.value * 10
    result
    return


if __name__ == "__main__":
    app.run()

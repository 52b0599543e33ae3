import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def ui_imports():
    import marimo as mo

    return


@app.cell
def data():
    sales = [120, 340, 210]
    total = sum(sales)
    return


if __name__ == "__main__":
    app.run()

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def ui_imports():
    import marimo as mo

    return (mo,)


@app.cell
def sales_cell():
    sales = {"EU": 120, "US": 95, "APAC": 143}
    return (sales,)


@app.cell
def picker(mo):
    region = mo.ui.dropdown(options=["EU", "US", "APAC"], value="EU", label="region")
    region
    return (region,)


@app.cell
def selected(region, sales):
    selected_total = sales[region.value]
    selected_total
    return


if __name__ == "__main__":
    app.run()

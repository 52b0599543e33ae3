import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    values = [2, 4, 6]
    return (values,)


@app.cell
def legacy(values):
    legacy_total = sum(values) * 100
    return (legacy_total,)


@app.cell
def legacy_report(legacy_total):
    legacy_text = f"legacy: {legacy_total}"
    return


@app.cell
def current(values):
    current_total = sum(values)
    return


if __name__ == "__main__":
    app.run()

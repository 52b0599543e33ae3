import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def rows_cell():
    rows = [
        {"Revenue": 100, "Cost": 80},
        {"Revenue": 250, "Cost": 200},
        {"Revenue": 90, "Cost": 95},
    ]
    return


if __name__ == "__main__":
    app.run()

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def imports():
    import statistics

    import marimo as mo
    return mo, statistics


@app.cell
def load_sales():
    sales = [
        {"region": "north", "units": 120, "price": 9.5},
        {"region": "south", "units": 80, "price": 12.0},
        {"region": "north", "units": 45, "price": 11.25},
        {"region": "east", "units": 150, "price": 8.0},
        {"region": "south", "units": 60, "price": 10.5},
        {"region": "east", "units": 95, "price": 9.0},
    ]
    return (sales,)


@app.cell
def revenue_per_sale(sales):
    revenue = [row["units"] * row["price"] for row in sales]
    return (revenue,)


@app.cell
def average_revenue(revenu, statistics):
    average = statistics.mean(revenu)
    return (average,)


@app.cell
def summary(average, mo):
    mo.md(f"**Average revenue per sale:** {average:,.2f}")
    return


@app.cell
def scratch():
    scratch_value = 42  # an old experiment nobody reads any more
    return


if __name__ == "__main__":
    app.run()

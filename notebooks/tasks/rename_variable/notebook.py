import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def imports():
    import pandas as pd

    return (pd,)


@app.cell
def load(pd):
    df = pd.DataFrame({"month": [1, 2, 3, 4], "amount": [100, 150, 120, 180]})
    return (df,)


@app.cell
def total_cell(df):
    total = int(df["amount"].sum())
    return


@app.cell
def best_cell(df):
    best_month = int(df.loc[df["amount"].idxmax(), "month"])
    return


@app.cell
def growth_cell(df):
    growth = df["amount"].pct_change().fillna(0).round(3).tolist()
    return


if __name__ == "__main__":
    app.run()

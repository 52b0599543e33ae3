import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def imports():
    import pandas as pd

    return (pd,)


@app.cell
def load(pd):
    df = pd.DataFrame({"item": ["pen", "cup", "lamp", "mug"], "price": [2.0, 3.5, 4.5, 6.0]})
    return (df,)


@app.cell
def avg(df):
    avg_price = df["Price"].mean()
    avg_price
    return


if __name__ == "__main__":
    app.run()

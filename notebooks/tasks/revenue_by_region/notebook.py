import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def imports():
    import pandas as pd

    return (pd,)


@app.cell
def load(pd):
    df = pd.read_csv("sales.csv")
    return (df,)


@app.cell
def preview(df):
    df.head()
    return


if __name__ == "__main__":
    app.run()

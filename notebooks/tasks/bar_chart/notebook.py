import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def imports():
    import pandas as pd

    return (pd,)


@app.cell
def load(pd):
    orders = pd.DataFrame(
        {
            "category": ["books", "games", "books", "music", "games", "books"],
            "amount": [12, 30, 8, 15, 22, 5],
        }
    )
    return


if __name__ == "__main__":
    app.run()

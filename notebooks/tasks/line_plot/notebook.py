import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def imports():
    import matplotlib.pyplot as plt

    return


@app.cell
def data():
    months = ["Jan", "Feb", "Mar", "Apr"]
    revenue = [120, 135, 128, 150]
    return


if __name__ == "__main__":
    app.run()

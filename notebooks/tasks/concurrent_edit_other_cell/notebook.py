import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def data():
    readings = [10, 12, 11]
    return (readings,)


@app.cell
def analysis(readings):
    average = sum(readings) / len(readings)
    return


if __name__ == "__main__":
    app.run()

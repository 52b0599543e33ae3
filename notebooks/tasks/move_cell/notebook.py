import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def analysis(double):
    doubled = [double(x) for x in [1, 2, 3]]
    return


@app.cell
def helpers():
    FACTOR = 2

    def double(x):
        return FACTOR * x

    return (double,)


if __name__ == "__main__":
    app.run()

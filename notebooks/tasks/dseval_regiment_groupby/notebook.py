import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def imports():
    import pandas as pd

    return (pd,)


@app.cell
def raw():
    raw_data = {
        "regiment": [
            "Nighthawks",
            "Nighthawks",
            "Nighthawks",
            "Nighthawks",
            "Dragoons",
            "Dragoons",
            "Dragoons",
            "Dragoons",
            "Scouts",
            "Scouts",
            "Scouts",
            "Scouts",
        ],
        "company": [
            "1st",
            "1st",
            "2nd",
            "2nd",
            "1st",
            "1st",
            "2nd",
            "2nd",
            "1st",
            "1st",
            "2nd",
            "2nd",
        ],
        "name": [
            "Miller",
            "Jacobson",
            "Ali",
            "Milner",
            "Cooze",
            "Jacon",
            "Ryaner",
            "Sone",
            "Sloan",
            "Piger",
            "Riani",
            "Ali",
        ],
        "preTestScore": [4, 24, 31, 2, 3, 4, 24, 31, 2, 3, 2, 3],
        "postTestScore": [25, 94, 57, 62, 70, 25, 94, 57, 62, 70, 62, 70],
    }
    return (raw_data,)


@app.cell
def frame(pd, raw_data):
    regiment = pd.DataFrame(raw_data)
    return


if __name__ == "__main__":
    app.run()

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
        "deaths": [523, 52, 25, 616, 43, 234, 523, 62, 62, 73, 37, 35],
        "battles": [5, 42, 2, 2, 4, 7, 8, 3, 4, 7, 8, 9],
        "size": [1045, 957, 1099, 1400, 1592, 1006, 987, 849, 973, 1005, 1099, 1523],
        "veterans": [1, 5, 62, 26, 73, 37, 949, 48, 48, 435, 63, 345],
        "readiness": [1, 2, 3, 3, 2, 1, 2, 3, 2, 1, 2, 3],
        "armored": [1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1],
        "deserters": [4, 24, 31, 2, 3, 4, 24, 31, 2, 3, 2, 3],
        "origin": [
            "Arizona",
            "California",
            "Texas",
            "Florida",
            "Maine",
            "Iowa",
            "Alaska",
            "Washington",
            "Oregon",
            "Wyoming",
            "Louisana",
            "Georgia",
        ],
    }
    return (raw_data,)


@app.cell
def frame(pd, raw_data):
    army = pd.DataFrame(raw_data).set_index("origin")
    return


if __name__ == "__main__":
    app.run()

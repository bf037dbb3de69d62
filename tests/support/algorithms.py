"""Hyper-parameters that train every algorithm in a fraction of a second on the tests' small
rating sets (fewer factors and passes than a real catalogue wants)."""

FAST = {
    "svd": {"factors": 4, "epochs": 5}, "svdpp": {"factors": 4, "epochs": 3},
    "nmf": {"factors": 4, "epochs": 10}, "als": {"factors": 8, "iterations": 5},
    "ease": {"lam": 10}, "easeals": {"lam": 10, "factors": 8, "iterations": 5, "reg": 0.5},
    "sansa": {"lam": 10}, "sansaals": {"lam": 10, "factors": 8, "iterations": 5, "reg": 0.5},
}  # fmt: skip

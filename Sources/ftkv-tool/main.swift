print("ftkv")

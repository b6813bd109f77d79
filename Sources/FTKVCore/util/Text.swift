extension String {
    /// Without leading and trailing blanks (spaces, tabs, newlines): option values, and Fortran
    /// strings, which arrive blank-padded.
    public var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" { s.removeLast() }
        return String(s)
    }
}

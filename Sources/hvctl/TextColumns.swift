/// Left-aligned text columns for the tables hvctl prints.
extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

/// The target this process runs (set once by main before libFuzzer starts calling back).
nonisolated(unsafe) var selectedTarget: ((UnsafeRawBufferPointer) -> Void)?

//! Skiff runtimes: the CRI-shaped `Runtime` trait and its backends.

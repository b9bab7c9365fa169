"""The dataset folder: its files, the split assignment and the build report."""

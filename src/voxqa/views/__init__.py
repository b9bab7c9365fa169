"""What people look at: the self-contained HTML report of runs and the dataset summary of voxqa inspect."""

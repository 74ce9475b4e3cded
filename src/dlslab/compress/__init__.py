"""dlslab.compress"""

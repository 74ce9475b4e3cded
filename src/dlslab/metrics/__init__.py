"""dlslab.metrics"""

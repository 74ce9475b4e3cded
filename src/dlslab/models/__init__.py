"""dlslab.models"""

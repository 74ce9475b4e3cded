"""dlslab.audio"""

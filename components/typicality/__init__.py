"""Typicality: is a photograph like the model's training photographs?"""

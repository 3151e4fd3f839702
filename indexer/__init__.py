"""Item-ID trees and constrained beam search: pure numpy, shared by training and serving."""

"""The parties (SP, PSP, users) over gRPC: the only package that imports grpc."""

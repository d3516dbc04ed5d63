"""Jobs: the contract the receiver and the workers share (contract.py) and the one dispatch
point every action job goes through in a worker (dispatch.py)."""

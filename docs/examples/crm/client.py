"""Stands in for a CRM's API client in the examples; the docs tests count its calls."""


class CRMClient:
    def __init__(self) -> None:
        self.pushed: list[int] = []
        self.failures_left = 0

    def push_user(self, user_id: int) -> None:
        if self.failures_left:
            self.failures_left -= 1
            msg = "CRM unreachable"
            raise ConnectionError(msg)
        self.pushed.append(user_id)


crm = CRMClient()

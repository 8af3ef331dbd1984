"""Stands in for an SMS gateway and a mailer in the examples; the docs tests steer them."""


class GatewayBusyError(Exception):
    """The SMS gateway asks to try again later."""


class SMSGateway:
    def __init__(self) -> None:
        self.busy_times = 0
        self.sent: list[tuple[str, str]] = []

    def send(self, phone: str, text: str) -> str:
        if self.busy_times:
            self.busy_times -= 1
            msg = "try again later"
            raise GatewayBusyError(msg)
        self.sent.append((phone, text))
        return f"sms-{len(self.sent)}"


class Mailer:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.bounce = False

    def send_digest(self, user_id: int) -> None:
        self.sent.append(user_id)

    def send_reminder(self, user_id: int) -> bool:
        self.sent.append(user_id)
        return not self.bounce


sms_gateway = SMSGateway()
mailer = Mailer()

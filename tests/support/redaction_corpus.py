"""A labelled corpus for REDACT_PII: what must be found (`{{KIND:value}}` marks it inline) and
ordinary text that must be left alone (numbers, dates, versions, code, hashes).

`labelled()` turns each sample into (text, [(kind, start, end)]). The positives mix the
shapes people paste (spaces, dashes, brackets, sentences around them); the negatives are the
things a chatbot for engineers sees all day. Test numbers are the issuers' published test
cards and the registries' example IBANs; secrets are made up in the providers' formats.
"""

from __future__ import annotations

import re

POSITIVE = [
    # e-mail
    "Please write to {{EMAIL:ann.lee@example.com}} about it.",
    "cc {{EMAIL:Bob_O'Neil@mail.example.co.uk}}".replace("'", ""),
    "Contact: <{{EMAIL:support+billing@example.org}}>",
    "{{EMAIL:first.last@sub.domain.example.io}}, {{EMAIL:x@example.museum}}",
    "mail me at {{EMAIL:j.doe42@uni-example.edu}}.",
    "From: {{EMAIL:ops-team@corp.example.net}}",
    # phone
    "Call me on {{PHONE:+44 20 7946 0958}} tomorrow.",
    "my cell is {{PHONE:(555) 123-4567}}",
    "US office {{PHONE:415-555-0132}} or {{PHONE:+1 415 555 0199}}",
    "Tel. {{PHONE:+49 30 901820}}",
    "ring {{PHONE:020 7946 0018}} (UK)",
    "WhatsApp {{PHONE:+33612345678}}",
    "{{PHONE:555.867.5309}} is the number",
    "reach support at {{PHONE:+61 2 9374 4000}}",
    "Mobil: {{PHONE:06-12345678}}",
    # cards
    "My card is {{CARD:4111 1111 1111 1111}}, exp 12/27.",
    "charge {{CARD:5555555555554444}} please",
    "amex {{CARD:3782-822463-10005}}",
    "{{CARD:6011 1111 1111 1117}} discover",
    "jcb {{CARD:3530111333300000}}",
    "Card number: {{CARD:4012-8888-8888-1881}}",
    "test card {{CARD:2223003122003222}}",
    "Diners {{CARD:30569309025904}}",
    # IBAN
    "Send it to {{IBAN:DE89 3704 0044 0532 0130 00}} by Friday.",
    "IBAN: {{IBAN:GB82WEST12345698765432}}",
    "{{IBAN:FR14 2004 1010 0505 0001 3M02 606}}",
    "NL account {{IBAN:NL91ABNA0417164300}}",
    "pay {{IBAN:ES9121000418450200051332}} EUR 100",
    "Konto {{IBAN:AT61 1904 3002 3457 3201}}",
    "{{IBAN:CH9300762011623852957}} (Swiss)",
    "IBAN {{IBAN:IE29 AIBK 9311 5212 3456 78}}",
    # national ids
    "SSN {{NATIONAL_ID:123-45-6789}}",
    "social security number: {{NATIONAL_ID:078-05-1120}}",
    "NI number {{NATIONAL_ID:AB 12 34 56 C}}",
    "my NINO is {{NATIONAL_ID:JG103758A}}",
    "DNI {{NATIONAL_ID:12345678Z}}",
    "NIE {{NATIONAL_ID:X1234567L}}",
    # IP
    "the server is at {{IP:10.20.30.40}}",
    "blocked {{IP:203.0.113.195}} and {{IP:198.51.100.7}}",
    "ssh admin@{{IP:192.168.1.20}}",
    "IPv6 {{IP:2001:db8:85a3::8a2e:370:7334}}",
    "from {{IP:fe80::1ff:fe23:4567:890a}}",
    "client {{IP:2001:0db8:0000:0000:0000:ff00:0042:8329}}",
    # secrets
    "aws key {{SECRET:AKIAIOSFODNN7EXAMPLE}}",
    "aws_secret_access_key = {{SECRET:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}}",
    "token {{SECRET:ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R}}",
    "{{SECRET:github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV}}",
    "SLACK_BOT_TOKEN={{SECRET:xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx}}",
    "webhook {{SECRET:https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX}}",
    "client secret {{SECRET:abc8Q~dEf-GhIjKlMnOpQrStUvWxYz0123456789}}",
    "Authorization: Bearer {{SECRET:eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c}}",
    "DATABASE_URL=postgres://app:{{SECRET:s3cr3t-Pa55}}@db.internal:5432/app",
    "Server=tcp:x.database.windows.net;User ID=app;Password={{SECRET:Hunter2!x}};Encrypt=True",
    "DefaultEndpointsProtocol=https;AccountName=acct;"
    "AccountKey={{SECRET:Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==}};",
    "OPENAI_API_KEY={{SECRET:sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789}}",
    "api_key: {{SECRET:a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6}}",
    "redis://:{{SECRET:pw0rdLongEnough}}@cache.example.net:6380/0",
    "{{SECRET:-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----}}",
    "{{SECRET:-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----}}",
]

# Ordinary text: nothing in it is personal data or a secret.
NEGATIVE = [
    "The meeting is on 2024-01-15 at 14:30, or 15/01/2024 if you prefer.",
    "Version 1.2.3 fixed it; 2.10.0 broke it again (see 3.0.0-rc.1).",
    "Pi is 3.14159265358979 and e is 2.718281828459045.",
    "Revenue grew from 1,234,567 to 2,345,678 in 2023 2024 2025.",
    "Order 123-456-789 shipped; invoice 2024-000123 is paid.",
    "ISBN 978-3-16-148410-0 and ISSN 0317-8471.",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 and 1a2b3c4",
    "uuid 123e4567-e89b-12d3-a456-426614174000 in the log",
    "colour #ff00aa, rgba(255, 0, 170, 0.5)",
    "for (int i = 0; i < 1000000; i++) { total += a[i] * 3; }",
    "token = get_token()\npassword = os.environ['DB_PASSWORD']",
    "def f(x: int) -> int:\n    return x ** 2 + 10 * x - 42",
    "std::vector<int> v; Foo::Bar(); a::b",
    "It took 12:30:45 to run; timestamps 1700000000.123456 and 1700000001.5",
    "Coordinates 51.5074, -0.1278 and 40.7128, -74.0060",
    "MAC 00:1A:2B:3C:4D:5E on eth0",
    "listen on 127.0.0.1:8080 and 0.0.0.0, netmask 255.255.255.0",
    "The card 1234 5678 9012 3456 in the example is not real.",
    "Account numbers like 12345678 and 87654321 are internal ids.",
    "SELECT id, name FROM users WHERE created_at > '2024-06-01' LIMIT 100;",
    "HTTP 404, 500 and 503; port 6379; pid 31337; 99.9% uptime",
    "Room 101, building 7, floor 3, desk 42-17.",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 user@host is a public key",
    "The build number is 20240115.3 and the job id 9876543210.",
    "Use `kubectl get pods -n prod` and `docker run -p 3978:3978 app`.",
    "We sold 4,111 units at 1,111.11 each in Q3.",
    "phone extension 4521; zip 94107; postcode SW1A 1AA",
    "base64 aGVsbG8gd29ybGQ= decodes to hello world",
    "The regex [A-Z]{2}\\d{2} matches two letters and two digits.",
    "Sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "Digits 0 1 2 3 4 5 6 7 8 9 and 1 2 3 4 5 6 7 8 9 0 1 2.",
    "Numbers: 0, 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000.",
    "GDPR Art. 17 and ISO 27001:2022, clause 5.1.2.",
    "Deadline Q4-2025; sprint 2025-W03; build 2025.01.15.",
]

_MARK = re.compile(r"\{\{([A-Z_]+):(.*?)\}\}", re.DOTALL)


def labelled(sample: str) -> tuple[str, list[tuple[str, int, int]]]:
    out: list[str] = []
    labels: list[tuple[str, int, int]] = []
    pos = 0
    length = 0
    for m in _MARK.finditer(sample):
        before = sample[pos : m.start()]
        out.append(before)
        length += len(before)
        labels.append((m[1], length, length + len(m[2])))
        out.append(m[2])
        length += len(m[2])
        pos = m.end()
    out.append(sample[pos:])
    return "".join(out), labels


# Written after the patterns were tuned on the lists above and never tuned against: the
# numbers the README and the closing note report for unseen text come from these.
HELD_OUT_POSITIVE = [
    "Hi, I'm Maria ({{EMAIL:maria.garcia@example.es}}), tel {{PHONE:+34 912 345 678}}.",
    "Mail {{EMAIL:INFO@EXAMPLE.COM}} or call {{PHONE:+1-202-555-0173}}",
    "my number: {{PHONE:(020) 7946 0321}}",
    "Kreditkarte {{CARD:4000 0566 5566 5556}} bitte belasten",
    "Visa {{CARD:4242424242424242}} / MC {{CARD:5105 1051 0510 5100}}",
    "IBAN {{IBAN:BE68 5390 0754 7034}} (Belgium)",
    "Überweisung an {{IBAN:DE44500105175407324931}}",
    "{{IBAN:SE45 5000 0000 0583 9825 7466}}",
    "SSN: {{NATIONAL_ID:219-09-9999}}",
    "NI no. {{NATIONAL_ID:CE 12 34 56 B}}",
    "Host {{IP:172.16.254.1}} unreachable",
    "peer [{{IP:2001:db8::ff00:42:8329}}]:443",
    "AWS_ACCESS_KEY_ID={{SECRET:AKIAI44QH8DHBEXAMPLE}}",
    "gh token {{SECRET:gho_16C7e42F292c6912E7710c838347Ae178B4a}}",
    "slack {{SECRET:xoxp-2048-4096-8192-abcdef0123456789abcdef0123456789}}",
    "mongodb+srv://admin:{{SECRET:Sup3rS3cret}}@cluster0.example.mongodb.net/test",
    "mysql://root:{{SECRET:toor1234}}@{{IP:10.0.0.5}}/db",
    "password: {{SECRET:Tr0ub4dor&3}}",
    "client_secret={{SECRET:9f8e7d6c5b4a39281706f5e4d3c2b1a0}}",
    "{{SECRET:-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----}}",
    "id_token {{SECRET:eyJraWQiOiJhYmMiLCJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUifQ."
    "c2lnbmF0dXJlLXBhcnQtaGVyZQ}}",
    "reply to {{EMAIL:noreply@github.com}} is ignored",
    "Bob's email is {{EMAIL:bob@example.com}} and his phone is {{PHONE:212-555-0147}}",
    "IP {{IP:8.8.8.8}} and {{IP:1.1.1.1}} are resolvers",
    "DNI: {{NATIONAL_ID:87654321X}}",
]
HELD_OUT_NEGATIVE = [
    "Call the function at line 123 of file main.py, column 45.",
    "The range 10.0-12.5 covers 95% of cases; see table 4.2.1.",
    "Tickets JIRA-12345 and OPS-678 are blocked by PR #4321.",
    "It costs $1,299.99 or €1.199,00; 3 payments of 433.33.",
    "Dates: 01.02.2024, 2024/02/01, Feb 1 2024, 1 Feb 2024.",
    "Use `curl -X POST http://localhost:3978/api/messages`.",
    "The model gpt-4o-2024-08-06 has a 128000 token context.",
    "chmod 0755 and umask 022; exit code 137 (OOM killed).",
    "Latitude 48.8566 N, longitude 2.3522 E; altitude 35 m.",
    "Lottery numbers 4 8 15 16 23 42 came up again.",
    "Serial SN-2024-00012345, part no. 800-555-12 (not a phone).",
    "const API_URL = process.env.API_URL || 'https://api.example.com';",
    "x = [1, 2, 3, 4]; y = {'a': 1}; print(x[0] + y['a'])",
    "git checkout -b feature/JIRA-1234 && git push origin HEAD",
    "Python 3.11.7, Node 20.11.0, Go 1.22.0, Rust 1.75.0",
    "The IBAN format is two letters, two check digits and up to 30 characters.",
    "Matrix 3x3: 1 0 0 / 0 1 0 / 0 0 1",
    "UUIDs such as 550e8400-e29b-41d4-a716-446655440000 identify rows.",
    "Store 4111 sold 1111 items on day 1111 of 1111 days.",
    "export PASSWORD_MIN_LENGTH=12 and TOKEN_TTL_SECONDS=3600",
]

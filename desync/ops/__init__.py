"""Operations behind the commands (make, extract, verify, ...), usable as a library."""

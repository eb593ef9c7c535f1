// no compiled ops: A4 reads csrc/ and finds none the closure calls

"""One client or module against a stand-in over a real socket, the fake clpctl executable, a second process or a
real PostgreSQL; and the tests of the stand-ins themselves."""

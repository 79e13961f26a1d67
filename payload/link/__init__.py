"""The downlink: the one port records leave by (`outbound`), and the radio's loop (`transmitter`)
that joins the link's parts — which frame next (`frames`), the hour's airtime (`airtime`), musing
sentences' stamps (`stamping`), listening (`windows`) and relaying (`relay`)."""

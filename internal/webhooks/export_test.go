package webhooks

// OnFinish makes d call f after each attempt it recorded, so that tests
// wait for results instead of polling the store.
func OnFinish(d *Dispatcher, f func(Delivery)) { d.finished = f }
